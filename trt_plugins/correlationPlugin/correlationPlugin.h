/*
 * DCFCorrelation: the TensorRT IPluginV3 of the DCF correlation op (DESIGN.md section 3).
 * Name "DCFCorrelation", version "1"; fields kernel_size and temporal_range (INT32), as TensorRT's
 * ONNX parser passes the attributes of a dcf::DCFCorrelation node. float32 and float16, linear.
 */
#ifndef DCF_CORRELATION_PLUGIN_H
#define DCF_CORRELATION_PLUGIN_H

#include "NvInfer.h"
#include "NvInferRuntime.h"

#include <string>
#include <vector>

namespace dcf
{

constexpr char const* kCorrelationPluginName{"DCFCorrelation"};
constexpr char const* kCorrelationPluginVersion{"1"};

class CorrelationPlugin : public nvinfer1::IPluginV3,
                          public nvinfer1::IPluginV3OneCore,
                          public nvinfer1::IPluginV3OneBuild,
                          public nvinfer1::IPluginV3OneRuntime
{
public:
    CorrelationPlugin(int32_t kernelSize, int32_t temporalRange, std::string nameSpace);
    CorrelationPlugin(CorrelationPlugin const& other);
    CorrelationPlugin& operator=(CorrelationPlugin const&) = delete;
    ~CorrelationPlugin() override = default;

    int32_t kernelSize() const noexcept
    {
        return mKernelSize;
    }
    int32_t temporalRange() const noexcept
    {
        return mTemporalRange;
    }
    int32_t outputChannels() const noexcept
    {
        return mKernelSize * mKernelSize * 2 * mTemporalRange;
    }

    // IPluginV3
    nvinfer1::IPluginCapability* getCapabilityInterface(nvinfer1::PluginCapabilityType type) noexcept override;
    nvinfer1::IPluginV3* clone() noexcept override;

    // IPluginV3OneCore
    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;

    // IPluginV3OneBuild
    int32_t getNbOutputs() const noexcept override;
    int32_t getOutputDataTypes(nvinfer1::DataType* outputTypes, int32_t nbOutputs,
        nvinfer1::DataType const* inputTypes, int32_t nbInputs) const noexcept override;
    int32_t getOutputShapes(nvinfer1::DimsExprs const* inputs, int32_t nbInputs, nvinfer1::DimsExprs const* shapeInputs,
        int32_t nbShapeInputs, nvinfer1::DimsExprs* outputs, int32_t nbOutputs,
        nvinfer1::IExprBuilder& exprBuilder) noexcept override;
    bool supportsFormatCombination(int32_t pos, nvinfer1::DynamicPluginTensorDesc const* inOut, int32_t nbInputs,
        int32_t nbOutputs) noexcept override;
    int32_t configurePlugin(nvinfer1::DynamicPluginTensorDesc const* in, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* out, int32_t nbOutputs) noexcept override;
    size_t getWorkspaceSize(nvinfer1::DynamicPluginTensorDesc const* inputs, int32_t nbInputs,
        nvinfer1::DynamicPluginTensorDesc const* outputs, int32_t nbOutputs) const noexcept override;

    // IPluginV3OneRuntime
    int32_t onShapeChange(nvinfer1::PluginTensorDesc const* in, int32_t nbInputs, nvinfer1::PluginTensorDesc const* out,
        int32_t nbOutputs) noexcept override;
    int32_t enqueue(nvinfer1::PluginTensorDesc const* inputDesc, nvinfer1::PluginTensorDesc const* outputDesc,
        void const* const* inputs, void* const* outputs, void* workspace, cudaStream_t stream) noexcept override;
    nvinfer1::IPluginV3* attachToContext(nvinfer1::IPluginResourceContext* context) noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldsToSerialize() noexcept override;

private:
    void setFieldsToSerialize();

    int32_t mKernelSize;
    int32_t mTemporalRange;
    std::string mNamespace;
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
};

class CorrelationPluginCreator : public nvinfer1::IPluginCreatorV3One
{
public:
    CorrelationPluginCreator();
    ~CorrelationPluginCreator() override = default;

    char const* getPluginName() const noexcept override;
    char const* getPluginVersion() const noexcept override;
    char const* getPluginNamespace() const noexcept override;
    nvinfer1::PluginFieldCollection const* getFieldNames() noexcept override;
    nvinfer1::IPluginV3* createPlugin(
        char const* name, nvinfer1::PluginFieldCollection const* fc, nvinfer1::TensorRTPhase phase) noexcept override;

private:
    std::vector<nvinfer1::PluginField> mFields;
    nvinfer1::PluginFieldCollection mFieldCollection{};
    std::string mNamespace;
};

//! Logs through TensorRT's logger once the library has been given one (setLoggerFinder), else stderr.
void logError(char const* message) noexcept;

} // namespace dcf

#endif // DCF_CORRELATION_PLUGIN_H
