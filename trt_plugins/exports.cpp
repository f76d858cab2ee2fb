/*
 * The entry points TensorRT's plugin registry calls when it loads this library
 * (IPluginRegistry::loadLibrary, trtexec --dynamicPlugins, Python registry.load_library).
 */
#include "correlationPlugin/correlationPlugin.h"

#include <cstdio>
#include <mutex>

// TensorRT's TENSORRTAPI exports only inside TensorRT's own build; this library hides everything
// else (CMAKE_CXX_VISIBILITY_PRESET hidden).
#define DCF_EXPORT __attribute__((visibility("default")))

namespace dcf
{
namespace
{
std::mutex gLoggerMutex;
nvinfer1::ILoggerFinder* gLoggerFinder{nullptr};
} // namespace

void logError(char const* message) noexcept
{
    nvinfer1::ILogger* logger = nullptr;
    {
        std::lock_guard<std::mutex> lock(gLoggerMutex);
        logger = gLoggerFinder != nullptr ? gLoggerFinder->findLogger() : nullptr;
    }
    if (logger != nullptr)
    {
        logger->log(nvinfer1::ILogger::Severity::kERROR, message);
    }
    else
    {
        std::fprintf(stderr, "%s\n", message);
    }
}

} // namespace dcf

extern "C" DCF_EXPORT void setLoggerFinder(nvinfer1::ILoggerFinder* finder)
{
    std::lock_guard<std::mutex> lock(dcf::gLoggerMutex);
    if (dcf::gLoggerFinder == nullptr && finder != nullptr)
    {
        dcf::gLoggerFinder = finder;
    }
}

extern "C" DCF_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static dcf::CorrelationPluginCreator sCorrelationCreator;
    static nvinfer1::IPluginCreatorInterface* const sCreators[] = {&sCorrelationCreator};
    nbCreators = 1;
    return sCreators;
}
