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

#ifdef DCF_STATIC_REGISTRATION
// The preload variant (libdcf_trt_plugins_preload.so) registers its creator when loaded, for hosts
// that load plugins with LD_PRELOAD or dlopen only, such as Triton's TensorRT backend. Do not hand
// it to IPluginRegistry::loadLibrary, which refuses creators that are already registered.
using dcf::CorrelationPluginCreator;
REGISTER_TENSORRT_PLUGIN(CorrelationPluginCreator);
#endif

extern "C" DCF_EXPORT nvinfer1::IPluginCreatorInterface* const* getCreators(int32_t& nbCreators)
{
    static dcf::CorrelationPluginCreator sCorrelationCreator;
    static nvinfer1::IPluginCreatorInterface* const sCreators[] = {&sCorrelationCreator};
    nbCreators = 1;
    return sCreators;
}
